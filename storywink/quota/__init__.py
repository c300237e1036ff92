"""The image model's quota, shared by every worker: the slot arithmetic, the limiter
on the shared database row, and the order a worker's waiting calls take slots in.
"""
