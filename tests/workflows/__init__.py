"""The workflows' orchestration: whole runs, redraws, replay, operator actions, a run's identity."""
