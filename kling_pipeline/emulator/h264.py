"""A tiny H.264 (Baseline) bitstream writer: one intra frame of raw samples, then skipped frames.

The first picture is an IDR slice whose macroblocks are all ``I_PCM`` (raw 8-bit samples,
no prediction, no transform), so any decoder shows exactly the pixels given; every later
picture is a P slice whose macroblocks are all skipped (a copy of the previous picture).
That is a valid stream of any length for a few hundred bytes past the first frame. Written
from ITU-T H.264 (sections 7.3.2.1 SPS, 7.3.2.2 PPS, 7.3.3 slice header, 7.3.4 slice
data, 7.3.5 macroblock layer); CAVLC, 4:2:0, frame-only, no deblocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["H264Stream", "encode_h264", "nal_unit"]

MB = 16
LOG2_MAX_FRAME_NUM = 4
I_PCM = 25
"""mb_type of I_PCM in an I slice (Table 7-11)."""


class _Bits:
    """An MSB-first bit writer (``u``, Exp-Golomb ``ue``/``se``, byte-aligned raw bytes)."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._acc = 0
        self._count = 0

    def u(self, value: int, width: int) -> None:
        self._acc = (self._acc << width) | (value & ((1 << width) - 1))
        self._count += width
        while self._count >= 8:
            self._count -= 8
            self._out.append((self._acc >> self._count) & 0xFF)
        self._acc &= (1 << self._count) - 1

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code, 2 * code.bit_length() - 1)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        if self._count:
            self.u(0, 8 - self._count)

    def raw(self, data: bytes) -> None:
        if self._count:
            raise ValueError("raw bytes need a byte-aligned writer")
        self._out += data

    def trailing(self) -> bytes:
        """rbsp_trailing_bits(): a stop bit, then zeros to the byte boundary."""
        self.u(1, 1)
        self.align_zero()
        return bytes(self._out)


def nal_unit(ref_idc: int, unit_type: int, rbsp: bytes) -> bytes:
    """The NAL header byte and the payload with emulation prevention (0x000003) applied."""
    out = bytearray([(ref_idc << 5) | unit_type])
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _sps(width_mbs: int, height_mbs: int, crop_right: int, crop_bottom: int) -> bytes:
    b = _Bits()
    b.u(66, 8)  # profile_idc: Baseline
    b.u(0b11000000, 8)  # constraint_set0 and set1 (constrained baseline), reserved zeros
    b.u(30, 8)  # level_idc 3.0
    b.ue(0)  # seq_parameter_set_id
    b.ue(LOG2_MAX_FRAME_NUM - 4)
    b.ue(2)  # pic_order_cnt_type 2: output order = decoding order
    b.ue(1)  # max_num_ref_frames
    b.u(0, 1)  # gaps_in_frame_num_value_allowed_flag
    b.ue(width_mbs - 1)
    b.ue(height_mbs - 1)
    b.u(1, 1)  # frame_mbs_only_flag
    b.u(1, 1)  # direct_8x8_inference_flag
    cropped = crop_right or crop_bottom
    b.u(1 if cropped else 0, 1)
    if cropped:  # offsets in units of 2 luma samples (4:2:0)
        b.ue(0)
        b.ue(crop_right // 2)
        b.ue(0)
        b.ue(crop_bottom // 2)
    b.u(0, 1)  # vui_parameters_present_flag
    return nal_unit(3, 7, b.trailing())


def _pps() -> bytes:
    b = _Bits()
    b.ue(0)  # pic_parameter_set_id
    b.ue(0)  # seq_parameter_set_id
    b.u(0, 1)  # entropy_coding_mode_flag: CAVLC
    b.u(0, 1)  # bottom_field_pic_order_in_frame_present_flag
    b.ue(0)  # num_slice_groups_minus1
    b.ue(0)  # num_ref_idx_l0_default_active_minus1
    b.ue(0)  # num_ref_idx_l1_default_active_minus1
    b.u(0, 1)  # weighted_pred_flag
    b.u(0, 2)  # weighted_bipred_idc
    b.se(0)  # pic_init_qp_minus26
    b.se(0)  # pic_init_qs_minus26
    b.se(0)  # chroma_qp_index_offset
    b.u(1, 1)  # deblocking_filter_control_present_flag
    b.u(0, 1)  # constrained_intra_pred_flag
    b.u(0, 1)  # redundant_pic_cnt_present_flag
    return nal_unit(3, 8, b.trailing())


def _idr(macroblocks: Sequence[bytes]) -> bytes:
    b = _Bits()
    b.ue(0)  # first_mb_in_slice
    b.ue(7)  # slice_type: I (all slices of the picture)
    b.ue(0)  # pic_parameter_set_id
    b.u(0, LOG2_MAX_FRAME_NUM)  # frame_num
    b.ue(0)  # idr_pic_id
    b.u(0, 1)  # dec_ref_pic_marking: no_output_of_prior_pics_flag
    b.u(0, 1)  # long_term_reference_flag
    b.se(0)  # slice_qp_delta
    b.ue(1)  # disable_deblocking_filter_idc: off
    for samples in macroblocks:
        b.ue(I_PCM)
        b.align_zero()  # pcm_alignment_zero_bit
        b.raw(samples)
    return nal_unit(3, 5, b.trailing())


def _skipped(frame_num: int, count: int) -> bytes:
    b = _Bits()
    b.ue(0)  # first_mb_in_slice
    b.ue(5)  # slice_type: P (all slices of the picture)
    b.ue(0)  # pic_parameter_set_id
    b.u(frame_num % (1 << LOG2_MAX_FRAME_NUM), LOG2_MAX_FRAME_NUM)
    b.u(0, 1)  # num_ref_idx_active_override_flag
    b.u(0, 1)  # ref_pic_list_modification_flag_l0
    b.u(0, 1)  # dec_ref_pic_marking: adaptive_ref_pic_marking_mode_flag
    b.se(0)  # slice_qp_delta
    b.ue(1)  # disable_deblocking_filter_idc
    b.ue(count)  # mb_skip_run: every macroblock
    return nal_unit(2, 1, b.trailing())


@dataclass(frozen=True, slots=True)
class H264Stream:
    sps: bytes
    pps: bytes
    frames: tuple[bytes, ...]
    """Each frame as one NAL unit (AVC sample data without its length prefix)."""


def _clamp(value: int) -> int:
    return 16 + value * 219 // 255  # studio range, never 0 (old decoders refuse a 0 PCM sample)


def encode_h264(width: int, height: int, frames: int, colours: Sequence[tuple[int, int, int]]) -> H264Stream:
    """``frames`` pictures of ``width`` x ``height`` (even numbers): the first shows horizontal
    bands of the given YCbCr ``colours`` (top to bottom), the others repeat it."""
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise ValueError(f"video size must be even and at least 2x2, got {width}x{height}")
    if frames < 1 or not colours:
        raise ValueError("need at least one frame and one colour")
    width_mbs, height_mbs = -(-width // MB), -(-height // MB)
    macroblocks = []
    for row in range(height_mbs):
        y, cb, cr = colours[min(len(colours) - 1, row * len(colours) // height_mbs)]
        for col in range(width_mbs):
            shade = (col * 40) // max(1, width_mbs)
            luma = bytes([_clamp(min(255, y + shade))]) * (MB * MB)
            macroblocks.append(luma + bytes([_clamp(cb)]) * 64 + bytes([_clamp(cr)]) * 64)
    first = _idr(macroblocks)
    rest = tuple(_skipped(i, len(macroblocks)) for i in range(1, frames))
    sps = _sps(width_mbs, height_mbs, width_mbs * MB - width, height_mbs * MB - height)
    return H264Stream(sps, _pps(), (first, *rest))
