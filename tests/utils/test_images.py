"""Sample grids show every column as an image: grey beside RGB, and one-hot label maps (the input
of GauGAN, or of pix2pix on labels -> photos) in the colours of a fixed class palette."""

from __future__ import annotations

import torch

from gan_research.utils.images import colour_label_map, displayable, grid_rows, label_palette


def _onehot(ids: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(ids, k).permute(0, 3, 1, 2).float()


def test_palette_gives_each_class_its_own_colour_in_range() -> None:
    palette = label_palette(35)
    assert palette.shape == (35, 3)
    assert palette.min() >= -1 and palette.max() <= 1
    assert len({tuple(c) for c in palette.tolist()}) == 35
    assert palette[0].tolist() == [-1.0, -1.0, -1.0]  # class 0 black


def test_label_map_pixels_take_their_class_colour_and_ignored_pixels_are_grey() -> None:
    ids = torch.tensor([[[0, 1], [2, 5]]])
    onehot = _onehot(ids, 6)
    onehot[0, :, 0, 0] = 0  # an ignored pixel: no class set
    rgb = colour_label_map(onehot)
    palette = label_palette(6)
    assert rgb.shape == (1, 3, 2, 2)
    assert torch.equal(rgb[0, :, 0, 1], palette[1])
    assert torch.equal(rgb[0, :, 1, 0], palette[2])
    assert torch.equal(rgb[0, :, 1, 1], palette[5])
    assert torch.equal(rgb[0, :, 0, 0], torch.zeros(3))


def test_grid_rows_shows_a_label_map_column_in_colour_beside_rgb_and_grey() -> None:
    ids = torch.randint(0, 6, (2, 4, 4), generator=torch.Generator().manual_seed(0))
    labels, rgb, grey = _onehot(ids, 6), torch.rand(2, 3, 4, 4) * 2 - 1, torch.rand(2, 1, 4, 4) * 2 - 1
    grid = grid_rows(labels, rgb, grey)
    assert grid.shape == (6, 3, 4, 4)
    assert torch.equal(grid[0::3], colour_label_map(labels))
    assert torch.equal(grid[1::3], rgb)
    assert torch.equal(grid[2::3], grey.expand(-1, 3, -1, -1))
    # Grey and RGB images are not label maps: shown as they are.
    assert displayable(grey) is grey and displayable(rgb) is rgb
