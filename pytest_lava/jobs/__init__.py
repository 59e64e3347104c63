"""Jobs: the file formats, the validated plan, and the runtime of one job."""
