"""DICOM: read chest radiographs into training arrays, and keep identifying headers out."""
