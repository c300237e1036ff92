"""The web backend (storywink/web) over real HTTP: access, uploads, streams, the live page."""
