"""The transfer set: unlabelled text for the teacher to label. ``sets`` holds the set and its real sources (the
training rows left unlabelled, a user's file), ``variants`` the synthetic ones, ``stage`` builds and reuses it."""
