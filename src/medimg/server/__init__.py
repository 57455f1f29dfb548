"""The medimg server: a DICOM node (pynetdicom) and DICOMweb + REST service (FastAPI) over the study
store, analysing what arrives.  Start it with ``medimg serve`` or :class:`MedimgServer`."""

from .app import MedimgServer
from .config import Limits, Peer, ServerConfig, load_config

__all__ = ["Limits", "MedimgServer", "Peer", "ServerConfig", "load_config"]
