"""The activity log: one entry per mutating ARM call (recorder.py), read back in the Azure Activity Log's shape
(routes.py) so `az monitor activity-log list` shows who did what, when, and whether it worked.
"""
