"""PoseFix: error synthesis, training, refinement of results files, analysis of its effect."""
