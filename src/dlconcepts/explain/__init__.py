"""Making the math visible: matrix walk-throughs, spreadsheet export, and how fast the matrix operations run."""
