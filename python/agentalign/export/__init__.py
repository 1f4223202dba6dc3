"""`agentalign export`, `check-model`, `play`: policies shipped as ML-Agents personalities.

onnx.py builds the one-decision ONNX graph (context carried in the recurrent memory),
contract.py checks any ONNX file against what Unity's loader checks, and personality.py writes
the card and plays a personality in the island exactly as Unity would drive it.
"""
