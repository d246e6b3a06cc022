"""The MIAS MiniMammographic Database: Info.txt, PGM images, archives, label schemes, download."""
