"""``dataset`` settings: where the images and keypoint annotations come from.

Part of params.yaml's validated settings (``hintpose.config.Params.dataset``); they live here,
next to the code that reads them, so that the data modules need not import the whole config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hintpose.errors import ConfigError
from hintpose.settings import MAX_SEED
from hintpose.settings import sub as _sub

#: Most images the synthetic generator makes per split (1,500 take under a minute here, a
#: million about 9 hours).
MAX_SYNTHETIC_IMAGES = 1_000_000


@dataclass(frozen=True)
class SyntheticConfig:
    """``dataset.synthetic``: image size, number, size and grouping of persons, image noise."""

    image_width: int = field(default=320, metadata={"min": 64, "max": 4096})
    image_height: int = field(default=256, metadata={"min": 64, "max": 4096})
    #: Persons drawn per image (COCO's keypoint metric scores at most 20 per image).
    persons_min: int = field(default=2, metadata={"min": 1, "max": 20})
    persons_max: int = field(default=7, metadata={"min": 1, "max": 20})
    #: Probability that an image arranges its persons in overlapping groups; also the share
    #: of that image's persons who join a group and how tightly groups pack.
    crowding: float = field(default=0.7, metadata={"min": 0.0, "max": 1.0})
    group_size_max: int = field(default=5, metadata={"min": 2, "max": 20})
    #: Standing height of a person as a fraction of the image height (log-uniform).
    person_height_min: float = field(default=0.3, metadata={"gt": 0.0, "max": 4.0})
    person_height_max: float = field(default=1.0, metadata={"gt": 0.0, "max": 4.0})
    #: Probability that a person (or a group) is placed partly outside the image.
    out_of_frame: float = field(default=0.05, metadata={"min": 0.0, "max": 1.0})
    #: Mean number of background distractor shapes (some of them limb-like bars).
    distractors: int = field(default=4, metadata={"min": 0, "max": 500})
    #: Gaussian blur sigma and pixel-noise std (grey levels), each scaled per image by a
    #: random factor in [0.6, 1.4] / [0.5, 1.5].
    blur_sigma: float = field(default=0.7, metadata={"min": 0.0, "max": 10.0})
    noise_std: float = field(default=4.0, metadata={"min": 0.0, "max": 100.0})
    jpeg_quality: int = field(default=92, metadata={"min": 1, "max": 100})
    #: The appearance. ``textured``: clothing textures (stripes, blotches, checks), the
    #: ``distractors`` background shapes and the ``noise_std`` pixel noise. ``plain``: the
    #: same scenes (every random draw is made, so the same persons stand at the same places)
    #: in plain shaded clothes, without distractor shapes and noise.
    look: str = field(default="plain", metadata={"choices": ("textured", "plain")})
    #: Persons with fewer visible pixels are not annotated (they still occlude others).
    min_area: int = field(default=16, metadata={"min": 1, "max": 4096 * 4096})
    #: Persons without any labeled joint are annotated only from this visible area on.
    min_area_unlabeled: int = field(default=300, metadata={"min": 1, "max": 4096 * 4096})

    def __post_init__(self) -> None:
        if self.persons_min > self.persons_max:
            raise ConfigError(f"persons_min ({self.persons_min}) must be <= persons_max "
                              f"({self.persons_max})")
        if self.person_height_min > self.person_height_max:
            raise ConfigError(f"person_height_min ({self.person_height_min}) must be <= "
                              f"person_height_max ({self.person_height_max})")


@dataclass(frozen=True)
class CocoImport:
    """A real COCO-format person-keypoint dataset to import instead of the synthetic one."""

    train_annotations: str = ""
    train_images: str = ""
    val_annotations: str = ""
    val_images: str = ""
    verify_images: str = field(default="decode", metadata={"choices": ("decode", "exists")})


@dataclass(frozen=True)
class DatasetParams:
    """``dataset``: where the images and keypoint annotations come from."""

    kind: str = field(default="synthetic", metadata={"choices": ("synthetic", "coco")})
    seed: int = field(default=1, metadata={"min": 0, "max": MAX_SEED})
    train_images: int = field(default=1500, metadata={"min": 1, "max": MAX_SYNTHETIC_IMAGES})
    val_images: int = field(default=200, metadata={"min": 1, "max": MAX_SYNTHETIC_IMAGES})
    synthetic: SyntheticConfig = _sub(SyntheticConfig)
    coco: CocoImport = _sub(CocoImport)
