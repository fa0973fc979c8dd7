"""Training of the derived networks (teacher, student, distillation) as a Run of tools/engine/run.py: the
loop (loop.py), one step and epoch (trainer.py), the KL distillation (distill.py), evaluation during training
(evaluation.py) and what is logged and loaded about the networks (networks.py)."""
