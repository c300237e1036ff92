"""The worker process (storywink/worker, worker.py): start-up, health, replicas, crashes."""
