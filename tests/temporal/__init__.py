"""The Temporal connection and the upgrade move (storywink/temporal)."""
