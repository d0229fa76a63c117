"""Reading and writing data: mask / palette PNGs, dataset layouts (DAVIS, ...), video frames."""
