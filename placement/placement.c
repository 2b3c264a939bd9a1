/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder: placement lands in its own change. */
#include "placement/map.h"
