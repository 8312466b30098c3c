"""Pose networks: HRNet, HintPose, MultiPoseNet, PoseFix."""
