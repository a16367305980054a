"""Stateless memory primitives shared by every memory-augmented model: the papers' equations.

Shapes: memory ``[B, N, W]``, weightings ``[B, H, N]`` (batch first, heads explicit). Every function is
differentiable, vectorised over batch and heads, device- and dtype-agnostic, and safe (no NaN or inf)
for zero memory, zero keys, one-hot or all-zero weightings and large strengths.
"""

from ._checks import EPS
from .access import read, write
from .allocation import allocation_weights, usage
from .content import content_weights, cosine_similarity
from .dnc_access import Access, access
from .interpolation import interpolate
from .ntm_access import address_read_write
from .linkage import directional_read_weights, link, link_and_directional_read_weights, precedence
from .sharpen import sharpen, sharpen_links
from .rows import RowMemory, gather_rows, replace_rows
from .shift import shift
from .sparse import SparseWeights
from .stack import STACK_ACTIONS, update_stack
from .tape import TAPE_ACTIONS, move_tape, tape_offsets, write_at_head

__all__ = [
    "EPS",
    "Access",
    "access",
    "address_read_write",
    "STACK_ACTIONS",
    "TAPE_ACTIONS",
    "allocation_weights",
    "content_weights",
    "cosine_similarity",
    "directional_read_weights",
    "interpolate",
    "link",
    "link_and_directional_read_weights",
    "move_tape",
    "precedence",
    "read",
    "replace_rows",
    "RowMemory",
    "SparseWeights",
    "gather_rows",
    "sharpen",
    "sharpen_links",
    "shift",
    "tape_offsets",
    "update_stack",
    "usage",
    "write",
    "write_at_head",
]
