"""The agent: runs inside every worker and runs its tasks. Standard library only.

It speaks HTTP to the control plane with a token scoped to its worker: it asks for the next
task, fetches the task's files, runs the task as its own process group, streams the output as
numbered log chunks, heartbeats, uploads the task's outputs and reports the exit. Every call is
retried with backoff, so a restart of the control plane costs nothing but time.
"""
