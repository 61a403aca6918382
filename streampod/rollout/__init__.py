"""Blue/green rollout tools: ``streampod rollout compare`` reads the real and shadow outputs and
reports how the candidate colour compares with the active one (the evidence at the approval gate)."""
