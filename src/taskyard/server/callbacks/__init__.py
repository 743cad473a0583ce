"""Task callbacks: the outbox written with a task's terminal status, and the thread that sends it.

``outbox`` holds the service functions (each takes a ``session``): where a task calls back, the
delivery written in the same transaction as the task's ending, the attempts. ``sender`` claims
due deliveries in short transactions, POSTs them outside any transaction, and records each
attempt; a delivery is retried with exponential backoff and jitter on no answer, a timeout, a
5xx or a 429, and resumes after a restart (its lease runs out). ``signing`` keeps each user's
signing secret, sealed by the vault.
"""
