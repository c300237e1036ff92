"""Settings, the style library and the secret redactor (storywink/config.py)."""
