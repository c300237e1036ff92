"""The demo (`storywink demo`): a sample book, an embedded dev server, a gallery page."""
