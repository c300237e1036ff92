"""The activities on their own: a page's outcomes and retries, how errors reach Temporal."""
