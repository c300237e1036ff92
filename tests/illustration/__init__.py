"""The illustration part (storywink/illustration): records, prompt, style assets, client."""
