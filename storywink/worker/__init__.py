"""The worker: what it serves (`assembly`) and how its process starts and stops (`process`)."""
