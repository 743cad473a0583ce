from taskyard.backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]
