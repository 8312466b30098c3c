"""HintPose: instance cue and recurrent refinement for top-down pose estimation in crowds."""
