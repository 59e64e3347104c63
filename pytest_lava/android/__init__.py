"""Android on the host: the real ``adb`` client with one adb server per job (:mod:`.adb`), and
lava-android-test's model re-implemented on the host (:mod:`.model`, :mod:`.library`, :mod:`.runner`).

Nothing here knows about boards or jobs: the board driver (``boards/master_android.py``) boots
Android and hands out an :class:`~pytest_lava.android.adb.AdbDevice`; the actions
(``actions/android*.py``) run tests on it.
"""
