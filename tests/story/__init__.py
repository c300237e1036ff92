"""The story part (storywink/story): answer checks, whole story runs and their failures."""
