"""The student side: TRL training (SFT, DPO), probe sets, and examination per taxonomy node.

It never imports the teacher side: the student is examined with the same batched
local generation the teacher uses, from `syllabus.backends`.
"""
