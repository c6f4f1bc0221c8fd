"""syllabus: a teacher-student data engine.

A teacher LLM turns a taxonomy of knowledge into syllabi, homework questions and
answers (GLAN); a student is trained on them and examined, and the results flow
back into the next round. The CLI (`syllabus`) is a thin layer over this library.

The library logs under the `syllabus` logger and configures no output: a run writes its
own log file (`runlog.py`), anything else is the application's choice.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"
