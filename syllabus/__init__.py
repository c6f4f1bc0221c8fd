"""syllabus: a teacher-student data engine.

A teacher LLM turns a taxonomy of knowledge into syllabi, homework questions and
answers (GLAN); a student is trained on them and examined, and the results flow
back into the next round. The CLI (`syllabus`) is a thin layer over this library.
"""

__version__ = "0.1.0"
