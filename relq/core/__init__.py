"""What every layer shares: settings, the questionnaire (instrument), roles and their
permissions, and formula-safe CSV. Imports nothing else from relq but relq.exceptions.
"""
