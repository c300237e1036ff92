"""The storywink command (storywink/cli): its subcommands, errors and exit codes."""
