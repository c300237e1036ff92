"""What every model call cost, and the budgets no fleet of workers can overspend.

records (ledger), prices (the per-model table with overrides), budgets, report.
"""
