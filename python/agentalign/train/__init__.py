"""Training stages: imitation (bc: pre-training and supervised fine-tuning), and later the reward
model, preference fine-tuning and RL. Each stage is one module that reads top to bottom."""
