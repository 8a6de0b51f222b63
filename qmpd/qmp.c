/* QMP client: being written (see qmp.h). */
#include "qmp.h"
