"""Data: the scripted player population (the gameplay corpus) and trajectory shards."""
