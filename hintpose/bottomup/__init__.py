"""MultiPoseNet, bottom-up: whole-image targets, training, and instance cues from its peaks."""
