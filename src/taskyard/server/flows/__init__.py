"""Flow runs owned by the control plane: their service, router, and the driver that advances them."""
