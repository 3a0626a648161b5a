"""Video and image I/O: probe, streaming decode, atomic encode, still images.

Videos go through PyAV (FFmpeg), stills through Pillow; both give the same :class:`Frame`.
"""

from ..config import X264_PRESETS
from .common import (
    IMAGE_SUFFIXES,
    READ_ONLY_VIDEO_SUFFIXES,
    VIDEO_SUFFIXES,
    Frame,
    is_image_path,
    is_media_path,
    is_video_path,
)
from .decode import iter_frames
from .encode import MediaWriter, check_output_path
from .image import read_image, write_image
from .probe import MediaInfo, probe

__all__ = [
    "IMAGE_SUFFIXES",
    "READ_ONLY_VIDEO_SUFFIXES",
    "VIDEO_SUFFIXES",
    "X264_PRESETS",
    "Frame",
    "MediaInfo",
    "MediaWriter",
    "check_output_path",
    "is_image_path",
    "is_media_path",
    "is_video_path",
    "iter_frames",
    "probe",
    "read_image",
    "write_image",
]
