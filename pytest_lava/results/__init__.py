"""Results: test runs and cases, and the Dashboard Bundle Format."""
