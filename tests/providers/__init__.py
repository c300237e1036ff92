"""The providers (storywink/providers) against the fake servers, through the real SDKs."""
