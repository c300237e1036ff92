"""The book part (storywink/book): texts and photos at the door, the operator's report."""
