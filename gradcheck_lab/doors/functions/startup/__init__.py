"""The folder ``gradcheck-lab record`` puts first on PYTHONPATH: its ``sitecustomize`` starts
the recording in every Python process the recorded command runs."""
