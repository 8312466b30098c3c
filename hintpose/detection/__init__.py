"""The MMDetection adapter: detector configs and folders, training with mmengine, detection."""
