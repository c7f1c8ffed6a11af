"""Live progress of jobs: watchers, the updates they see, and their Server-Sent Event streams."""
