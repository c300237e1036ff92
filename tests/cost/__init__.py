"""The cost part (storywink/cost): the ledger, prices, budgets, what the CLI shows of them."""
