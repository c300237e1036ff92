"""The image model's quota (storywink/quota): the shared limiter, replicas sharing it, fairness."""
