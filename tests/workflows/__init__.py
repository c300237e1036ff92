"""The two workflows' orchestration: whole runs, replay, operator actions, a run's identity."""
