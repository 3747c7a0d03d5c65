"""The dataset image in a board's SPI flash: where it lives, whether it fits, programming it.

Each board's configuration flash holds the bitstream from address 0 and a
dataset image (:mod:`.image`) in a fixed region above it, :data:`DATA_REGIONS`:

==========  ======================  ======================  ======================  ==========================
board       flash                   largest bitstream       image region            holds
==========  ======================  ======================  ======================  ==========================
icebreaker  W25Q128JV, 16 MiB       104,090 bytes           0x100000 - 0x1000000    15 MiB: 925,212 records
                                                                                    of 16 inputs
ulx3s-85f   IS25LP128F, 16 MiB      about 2.42 MB           0x400000 - 0xFF0000     12 MiB - 64 KiB: 15,945
                                    (uncompressed)                                  MNIST records
==========  ======================  ======================  ======================  ==========================

Why these numbers. amaranth-boards 0.0.21 declares both boards' flash pins
(the iCEBreaker's ``SPIFlashResources`` with 1x/2x/4x variants, the ULX3S's
``spi_flash`` without a clock pin, which is ``USRMCLK``) but no flash size or
part; the parts and sizes are the boards' own documentation (iCEBreaker:
W25Q128JV; ULX3S README: 16 MB IS25LP128F).

* **iCEBreaker**: an iCE40UP5K bitstream is always 104,090 bytes (the whole
  configuration; our build's ``top.bin``). 1 MiB leaves ten times that,
  enough for an iCE40 warm-boot set (a header and up to four images) too.
  The region runs to the end of the 16 MiB flash every iCEBreaker has.
* **ULX3S-85F**: an uncompressed LFE5U-85F bitstream of our default design is
  2,224,429 bytes (``ecppack`` without ``--compress``; 128 of the 208 block
  RAMs initialised; the build itself compresses, to 1,074,131 bytes); with
  every block RAM initialised it would be about 2.42 MB. 4 MiB is above the
  largest bitstream with 1.7 MiB to spare. The region ends one 64 KiB sector
  before the end of the 16 MiB flash: ECP5 multi-boot set-ups (the ULX3S's
  US2 bootloader) keep their jump table in the flash's last bytes.
  12 MiB - 64 KiB holds 15,945 MNIST records (785 bytes each): MNIST's t10k
  (the project's 8000/2000 split) fits, the 60,000-sample training set does
  not. ULX3S boards with a smaller flash (4 or 8 MiB, seen on other ULX3S
  variants) lack part or all of the region; openFPGALoader refuses writes
  past the end of a flash it knows ("flash overflow").

Both offsets are multiples of the flashes' 64 KiB erase block, so erasing
the image's blocks never touches a bitstream block, and neither programmer
erases more than the blocks it writes (no chip erase: the bitstream stays).

:func:`check_image_fits` refuses an image whose inputs or classes differ
from the board's trainer, or that is larger than the region;
:func:`load_data` checks that, then writes the image with the board's
programmer, found exactly as :func:`.build.program_bitstream` finds it
(``ICEPROG`` / ``OPENFPGALOADER``).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .build import BuildError, _programmer
from .image import ImageError, ImageInfo, read_image
from .top import BOARDS

__all__ = ["DATA_REGIONS", "DataRegion", "check_image_fits", "load_data", "load_data_command"]

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class DataRegion:
    """Where a board's dataset image lives in its configuration flash."""

    #: flash byte address of the image's first byte
    offset: int
    #: bytes available from ``offset``
    size: int
    #: the flash chip and its size in bytes (the board's documentation; amaranth-boards gives pins only)
    flash: str
    flash_bytes: int
    #: the largest bitstream the board's FPGA takes (bytes from address 0)
    max_bitstream_bytes: int

    @property
    def end(self) -> int:
        """First flash address past the region."""
        return self.offset + self.size


DATA_REGIONS: dict[str, DataRegion] = {
    "icebreaker": DataRegion(
        offset=1 * MIB, size=15 * MIB, flash="W25Q128JV", flash_bytes=16 * MIB, max_bitstream_bytes=104_090
    ),
    "ulx3s-85f": DataRegion(
        offset=4 * MIB,
        size=12 * MIB - 64 * KIB,
        flash="IS25LP128F",
        flash_bytes=16 * MIB,
        max_bitstream_bytes=2_420_000,
    ),
}


def _known(board: str) -> None:
    if board not in BOARDS:
        raise BuildError(f"board: unknown board {board!r} (choose from {', '.join(BOARDS)})")


def check_image_fits(info: ImageInfo, board: str, layers: tuple[int, ...] | None = None) -> None:
    """Refuse an image that ``board`` cannot train from.

    The image's inputs and classes must be the first and last layer widths
    of the board's trainer (its default :attr:`.BoardSpec.layers`, or
    ``layers`` for a build with others), and the image must fit the board's
    :data:`DATA_REGIONS` entry.

    Raises
    ------
    ImageError
        Naming the image, its shape or size, and the board's.
    BuildError
        For an unknown board (as :func:`.build.program_bitstream`).
    """
    _known(board)
    layers = tuple(layers) if layers else BOARDS[board].layers
    if (info.inputs, info.classes) != (layers[0], layers[-1]):
        raise ImageError(
            f"dataset image {info.source}: {info.inputs} inputs and {info.classes} classes, but the "
            f"{board} trainer ({'-'.join(map(str, layers))}) takes {layers[0]} inputs and "
            f"{layers[-1]} classes"
        )
    region = DATA_REGIONS[board]
    if info.size > region.size:
        raise ImageError(
            f"dataset image {info.source}: {info.size:,} bytes do not fit the {board}'s data region "
            f"({region.size:,} bytes at flash offset 0x{region.offset:x})"
        )


def load_data_command(board: str, image_path: str | os.PathLike) -> list[str]:
    """The command that writes ``image_path`` at ``board``'s data offset.

    iCEBreaker: ``iceprog -o OFFSET FILE``; ULX3S: ``openFPGALoader -b ulx3s
    -f --file-type bin -o OFFSET FILE`` (``--file-type bin``: written as raw
    data whatever the file is called; by its extension openFPGALoader would
    parse a ``.bit`` or ``.mcs`` file as a bitstream). Offsets are decimal,
    which both programmers parse. Raises :class:`BuildError` when the
    programmer is not found, exactly as :func:`.build.program_bitstream`.
    """
    _known(board)
    spec, offset = BOARDS[board], str(DATA_REGIONS[board].offset)
    tool = _programmer(spec)[0]
    if spec.programmer[0] == "iceprog":
        return [tool, "-o", offset, os.fspath(image_path)]
    return [tool, "-b", "ulx3s", "-f", "--file-type", "bin", "-o", offset, os.fspath(image_path)]


def load_data(
    board: str, image_path: str | os.PathLike, *, layers: tuple[int, ...] | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Check the image at ``image_path`` for ``board``, then program it into the board's data region.

    Everything is checked before the programmer runs: the board, the image
    (:func:`.image.read_image`), that it fits (:func:`check_image_fits`) and
    that the programmer exists. ``dry_run`` stops there.

    Writing the flash resets the FPGA, which then configures itself from the
    flash's bitstream (iceprog holds CRESET during the write; openFPGALoader
    clears the ECP5's SRAM to reach the flash and refreshes it after): load
    the data before loading a bitstream into SRAM (``program_bitstream``
    uses ``-m`` on the ULX3S).

    Returns
    -------
    dict
        ``board, image, offset, region_bytes, image_bytes, train, test,
        inputs, classes, payload_crc, command, programmed``.

    Raises
    ------
    ImageError
        The image is unreadable, corrupt, or not for this board.
    BuildError
        Unknown board, programmer missing or failing (one line, as
        :func:`.build.program_bitstream`).
    """
    _known(board)
    info, _ = read_image(image_path)
    check_image_fits(info, board, layers)
    command = load_data_command(board, Path(image_path))
    region = DATA_REGIONS[board]
    report: dict[str, Any] = {
        "board": board,
        "image": os.fspath(image_path),
        "offset": region.offset,
        "region_bytes": region.size,
        "image_bytes": info.size,
        "train": info.train_count,
        "test": info.test_count,
        "inputs": info.inputs,
        "classes": info.classes,
        "payload_crc": info.payload_crc,
        "command": command,
        "programmed": False,
    }
    if dry_run:
        return report
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        last = (result.stderr or result.stdout).strip().splitlines()
        raise BuildError(
            f"program: {' '.join(command)} failed (exit status {result.returncode})" + (f": {last[-1]}" if last else "")
        )
    report["programmed"] = True
    return report
