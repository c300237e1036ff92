"""storywink demo (storywink/demo): the sample book, the gallery, where the Web UI is."""
